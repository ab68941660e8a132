"""``python -m netbus_bench <scenario>``: the same as ``netbus bench <scenario>``."""

from netbus_bench.cli import bench

__all__: list[str] = []

if __name__ == "__main__":
    bench(prog_name="python -m netbus_bench")
