"""Cost model (pure Python, no torch): step times, collectives, serving steady state, calibration."""
