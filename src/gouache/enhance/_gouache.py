"""The private parts of gouache that ``gouache.enhance`` uses, imported in this one place:
when the package's internal layout changes, only this file follows it."""

from .._engines.requests import EngineOptions, parse_device
from .._files import check_writable, write_atomic
from .._image import SDImage
from .._modelfiles.catalog import _MODEL_FOLDERS as MODEL_FOLDERS
from .._modelfiles.catalog import RECIPES, DownloadError, _import_hub, pull
from .._modelfiles.catalog import _cache_dir as _hf_cache_dir
from .._modelfiles.inspect import inspect as inspect_model
from .._pipeline.infotext import save_image
from .._pipeline.model import SDModel
from .._sdcpp.native import SDType


def hf_cache_dir() -> str:
    """The Hugging Face cache folder gouache's downloads use (``HF_HUB_CACHE``, ``HF_HOME/hub``...)."""
    try:
        return str(_hf_cache_dir(_import_hub(), None))
    except ImportError:
        return "(huggingface_hub not installed)"


__all__ = [
    "MODEL_FOLDERS",
    "RECIPES",
    "DownloadError",
    "EngineOptions",
    "SDImage",
    "SDModel",
    "SDType",
    "check_writable",
    "hf_cache_dir",
    "inspect_model",
    "parse_device",
    "pull",
    "save_image",
    "write_atomic",
]
