"""Model-file knowledge: header reading, family detection and defaults, catalogs, conversion."""
