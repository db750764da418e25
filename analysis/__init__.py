"""Pure analysis over samples: arrays and frames in, results out (no I/O, no clock reads)."""
