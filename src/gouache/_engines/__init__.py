"""Engine implementations of gouache._engines.base.Engine (imported by name, never by pipelines)."""
