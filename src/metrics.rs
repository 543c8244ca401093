//! PSNR and SSIM.
