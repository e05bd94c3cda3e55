"""Engine implementations of gouache._engine.Engine (imported by name, never by pipelines)."""
