"""StyleGAN2-style generator and discriminator used by single-image translation (SinCUT)."""
