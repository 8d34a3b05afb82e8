"""Scoring restorations: the papers' PSNR/SSIM, result tables and image panels."""
