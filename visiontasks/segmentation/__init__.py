"""(filled in by the segmentation slice)"""
