"""Engines behind one interface (:mod:`.base`) and one registry (:mod:`.registry`); the
engine-neutral requests (:mod:`.requests`).  Engine modules are imported by name, never by the
pipeline."""
