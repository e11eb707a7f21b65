"""A massif detailed snapshot as bytes per connection.

    python3 massif_tree.py SNAPSHOT N [DEPTH [MIN_BYTES_PER_CONN [BEFORE_SNAPSHOT]]]

Prints the allocation tree down to DEPTH, entries of at least
MIN_BYTES_PER_CONN, and with BEFORE_SNAPSHOT the heap difference per
connection (see idle_massif.sh)."""
import re
import sys


def heap(path):
    text = open(path).read()
    return (int(re.search(r"mem_heap_B=(\d+)", text).group(1)),
            int(re.search(r"mem_heap_extra_B=(\d+)", text).group(1)), text)


path, n = sys.argv[1], int(sys.argv[2])
depth = int(sys.argv[3]) if len(sys.argv) > 3 else 3
min_b = float(sys.argv[4]) if len(sys.argv) > 4 else 20
h, e, text = heap(path)
if len(sys.argv) > 5:
    h0, e0, _ = heap(sys.argv[5])
    print(f"before: {h0} (+{e0}); held: {h} (+{e}); difference per conn: "
          f"{(h - h0) / n:.0f} (+{(e - e0) / n:.0f} malloc overhead) B")
for line in text.split("\n"):
    m = re.match(r"^( *)n(\d+): (\d+) (.*)$", line)
    if not m:
        continue
    d, b = len(m.group(1)), int(m.group(3))
    if d > depth or b / n < min_b:
        continue
    what = re.sub(r"^0x[0-9A-F]+: ", "", m.group(4))
    what = re.sub(r" \(in [^)]*turbo_ws\.so\)", "", what)[:140]
    print(f'{"  " * d}{b / n:7.0f}  {what}')
