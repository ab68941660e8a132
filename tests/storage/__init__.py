"""Tests for netbus.storage, against real SQLite files and a real MariaDB server."""
