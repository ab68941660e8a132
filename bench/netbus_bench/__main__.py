"""``python -m netbus.bench <scenario>``: the same as ``netbus bench <scenario>``."""

from netbus.bench.cli import bench

if __name__ == "__main__":
    bench(prog_name="python -m netbus.bench")
