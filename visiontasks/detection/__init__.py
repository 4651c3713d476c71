"""(filled in by the detection slice)"""
