from tests.standins.fixtures import cockpit_standin, gitea_standin, npm_standin, portainer_standin

__all__ = ["cockpit_standin", "gitea_standin", "npm_standin", "portainer_standin"]
