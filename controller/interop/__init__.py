"""Moving workflows between repositories and tools: `flowpin export` / `flowpin import`.

Pure, table-tested pieces: `formats` (detection, YAML out), `migrations` (older apiVersions),
`bundle` (manifest, checksums, deterministic tar), `conflicts` (name decisions), `n8n`,
`n8n_nodes` and `expressions` (n8n ↔ flowpin), `imports` and `exports` (the plans). The git
side is `gitio`; the commands are `controller.cli.interop`. See docs/interop.md.
"""
