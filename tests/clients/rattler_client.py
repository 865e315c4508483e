"""A conda client for the tests: py-rattler (the rattler Python bindings)
solving and installing from a channel served by artifact-upload-handler.

Usage: rattler_client.py CHANNEL_URL PLATFORM PREFIX CACHE_DIR SPEC...

Trusts the certificate in SSL_CERT_FILE (rattler's "system" roots) and reads
repodata.json / repodata.json.zst, with sharded repodata disabled, unless
AUH_RATTLER_DEFAULTS=1 asks for rattler's default settings (which fetch CEP 16
shards when the channel has them). Prints one
JSON object: {"records": [{"name", "version", "url", "sha256"}...]} after
installing them into PREFIX (rattler checks each download against the sha256
in the metadata), or {"error": "..."} with exit status 3 when the specs
cannot be solved.
"""

import asyncio
import json
import os
import sys

import rattler
from rattler import Client, Config, Gateway, SourceConfig
from rattler.exceptions import SolverError


async def main(channel, platform, prefix, cache_dir, specs):
    config = Config.from_toml('tls-root-certs = "system"')
    client = Client.from_config(config, max_retries=0)
    if os.environ.get("AUH_RATTLER_DEFAULTS") == "1":
        gateway = Gateway(cache_dir=cache_dir, client=client)
    else:
        gateway = Gateway(
            cache_dir=cache_dir,
            default_config=SourceConfig(sharded_enabled=False),
            client=client,
        )
    try:
        records = await rattler.solve(
            sources=[channel],
            specs=specs,
            gateway=gateway,
            platforms=[platform, "noarch"],
            virtual_packages=[],
        )
    except SolverError as err:
        print(json.dumps({"error": str(err)}))
        return 3
    await rattler.install(
        records,
        target_prefix=prefix,
        cache_dir=cache_dir + "/pkgs",
        show_progress=False,
        client=client,
        execute_link_scripts=False,
    )
    print(
        json.dumps(
            {
                "records": [
                    {
                        "name": r.name.normalized,
                        "version": str(r.version),
                        "url": r.url,
                        "sha256": r.sha256.hex() if r.sha256 else None,
                    }
                    for r in records
                ]
            }
        )
    )
    return 0


if __name__ == "__main__":
    channel, platform, prefix, cache_dir, *specs = sys.argv[1:]
    code = asyncio.run(main(channel, platform, prefix, cache_dir, specs))
    sys.stdout.flush()
    # Skip interpreter teardown: rattler's runtime threads can abort it
    # after a failed solve, which would hide the exit status.
    os._exit(code)
