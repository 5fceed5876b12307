"""Ray's fake multi-node provider (the real autoscaler launches and removes local raylets) with
what the test needs of each node: its own temp folder, as each machine has its own disk, and its
own spot metadata endpoint, as each EC2 instance has its own. Loaded by the head's autoscaler
from `provider: {type: external, module: tests.sweep.fake_nodes.NodeLocalProvider}`."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import ray._private.parameter
from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider


class NodeLocalProvider(FakeMultiNodeProvider):
    def _create_node_with_resources_and_labels(self, node_config, tags, count, resources, labels):
        real = ray._private.parameter.RayParams
        root = Path(self.provider_config["node_tmp_root"])
        spot = self.provider_config.get("spot_metadata_url")

        def params(**kwargs):
            node_id = kwargs["env_vars"]["RAY_OVERRIDE_NODE_ID_FOR_TESTING"]
            tmp = root / node_id[-5:]
            tmp.mkdir(parents=True, exist_ok=True)
            extra = {"TMPDIR": str(tmp)}  # every process of this node: tempfile goes there
            if spot:
                extra |= {
                    "ITX_SPOT_METADATA_URL": f"{spot}/{node_id}",
                    "ITX_SPOT_POLL_SECONDS": "0.5",
                }
            kwargs["env_vars"] = {**kwargs["env_vars"], **extra}
            return real(**kwargs)

        with mock.patch.object(ray._private.parameter, "RayParams", params):
            super()._create_node_with_resources_and_labels(
                node_config, tags, count, resources, labels
            )
