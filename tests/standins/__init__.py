"""Stand-ins for the HTTP APIs the service initialisers call: Gitea, Portainer, Nginx Proxy Manager, Cockpit.

Each is a real HTTP server on loopback that answers as the product's official specification says, records
every request and checks it against that specification (`violations`). See `base.py` for the shared
interface, `spec.py` for the checker and `fixtures.py` for the pytest fixtures.
"""

from tests.standins.base import Recorded, Reply, StandIn
from tests.standins.cockpit import CockpitStandIn
from tests.standins.gitea import GiteaStandIn
from tests.standins.npm import NpmStandIn
from tests.standins.portainer import PortainerStandIn

__all__ = ["CockpitStandIn", "GiteaStandIn", "NpmStandIn", "PortainerStandIn", "Recorded", "Reply", "StandIn"]
