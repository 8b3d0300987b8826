"""Data: image IO, clean sources, degradations, the MDIR manifest schema, SDIR sets, synthesis, patch sampling."""
