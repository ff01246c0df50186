"""`import farslip_ext` imports no mmseg/mmcv, makes no network call and changes nothing but registration."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def test_import_has_no_side_effects():
    code = textwrap.dedent("""
        import json, os, socket, sys
        calls = []
        def deny(*a, **k):
            calls.append(repr(a)[:80]); raise OSError('network disabled in test')
        socket.socket.connect = deny
        socket.create_connection = deny
        socket.getaddrinfo = deny
        env, path, cwd = dict(os.environ), list(sys.path), os.getcwd()
        import farslip_ext
        import open_clip
        print(json.dumps({
            'mm': sorted(m for m in sys.modules if m.split('.')[0] in ('mmseg', 'mmcv')),
            'calls': calls,
            'env_changed': sorted(k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k)),
            'path_changed': path != sys.path,
            'cwd_changed': cwd != os.getcwd(),
            'components': sorted(m for m in sys.modules if m.startswith(('farslip_ext.losses', 'farslip_ext.train', 'farslip_ext.data', 'farslip_ext.evaluation', 'farslip_ext.segmentation', 'farslip_ext.heads', 'farslip_ext.plugins.components'))),
            'has_models': 'farslip-vitb16' in open_clip.list_models(),
        }))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["mm"] == []
    assert r["calls"] == []
    assert r["env_changed"] == []
    assert not r["path_changed"] and not r["cwd_changed"]
    assert r["components"] == []  # components register on the first registry lookup, not at import
    assert r["has_models"] is True
