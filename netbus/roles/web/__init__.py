"""The web role: the browser client, its config and the cluster's health over HTTP."""

from netbus.roles.web.app import STATIC_DIR, WebServer, build_web

__all__ = ["STATIC_DIR", "WebServer", "build_web"]
