"""Networks: the U-Net and encoder U-Nets, their configuration and tile geometry, model files and
shipped models by name, and bioimage.io packages run as models."""
