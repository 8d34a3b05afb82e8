"""Jobs on folders of image files: predict's plan of inputs and outputs, scoring results against ground truths."""
