"""Small files shipped with the package (see tools/make_selfcheck_image.py)."""
from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
SELFCHECK_IMAGE = ASSETS_DIR / "selfcheck_scene.png"
