"""The package installs into a fresh virtual environment; its data and entry points resolve there."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_non_editable_install_into_fresh_venv(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = Path(subprocess.check_output([str(py), "-c", "import sysconfig;print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    # Dependencies come from the project's environment (not its editable farslip_ext: .pth files of a
    # path added this way are not processed); farslip_ext itself is built and installed fresh.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    out = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet", "--no-deps",
         "--no-build-isolation", str(REPO)],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    probe = textwrap.dedent("""
        import json, importlib.metadata as md, farslip_ext, open_clip
        from farslip_ext.catalogue import catalogue_dir
        eps = {ep.name: ep.value for ep in md.entry_points(group='farslip_ext')}
        scripts = {ep.name: ep.value for ep in md.entry_points(group='console_scripts') if ep.name == 'farslip'}
        mod = md.entry_points(group='farslip_ext')['builtin'].load()
        print(json.dumps({'file': farslip_ext.__file__, 'catalogue': str(catalogue_dir()), 'eps': eps,
                          'scripts': scripts, 'loaded': mod.__name__,
                          'models': [m for m in open_clip.list_models() if m.startswith('farslip')]}))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    r = json.loads(res.stdout.strip().splitlines()[-1])
    assert r["file"].startswith(str(site))
    assert r["catalogue"].startswith(str(site)) and r["catalogue"].endswith("_registry_data")
    assert r["eps"] == {"builtin": "farslip_ext.plugins.builtin"}
    assert r["scripts"] == {"farslip": "farslip_ext.cli:main"}
    assert r["loaded"] == "farslip_ext.plugins.builtin"
    assert set(r["models"]) >= {"farslip-vitb16", "farslip-vitb32"}
    assert (venv / "bin" / "farslip").exists()
    pkg = site / "farslip_ext"
    for rel in ("_registry_data/classnames/cls_loveda.txt", "_registry_data/published_results.json",
                "segmentation/configs/_base_/farslip_ovss.py", "segmentation/configs/loveda.py",
                "train/recipes/stage1.py", "assets/selfcheck_scene.png", "assets/demo_clip.safetensors",
                "_registry_data/model_configs/farslip-demo-tiny.json"):
        assert (pkg / rel).is_file(), rel
