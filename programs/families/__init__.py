"""Family logic: build, run and score the published program families (VPEval, GenEval, TextCoT, image to 3D, VPGen)."""
