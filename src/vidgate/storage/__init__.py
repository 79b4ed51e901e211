"""Where finished videos live."""
