"""The stable-diffusion.cpp binding: ABI declarations, library loading, callback dispatch, parameters,
checks, handles."""
