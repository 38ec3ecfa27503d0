#!/usr/bin/env python3
"""Writes world.svg, the land outline behind the web view's map.

Source: Natural Earth 1:110m land polygons (public domain,
naturalearthdata.com), as TopoJSON in the npm package world-atlas 2.0.2
(file land-110m.json). Equirectangular projection: x = lon + 180,
y = 90 - lat, one unit per degree, 0.1 degree precision.

    npm pack world-atlas@2.0.2 && tar xzf world-atlas-2.0.2.tgz
    python3 make-world-svg.py package/land-110m.json > world.svg
"""
import json
import sys


def main(path):
    topo = json.load(open(path))
    (sx, sy), (tx, ty) = topo["transform"]["scale"], topo["transform"]["translate"]
    arcs = []
    for arc in topo["arcs"]:
        x = y = 0
        pts = []
        for dx, dy in arc:
            x += dx
            y += dy
            pts.append((x * sx + tx, y * sy + ty))
        arcs.append(pts)

    def ring(indexes):
        pts = []
        for i in indexes:
            a = arcs[i] if i >= 0 else arcs[~i][::-1]
            pts.extend(a if not pts else a[1:])
        return pts

    def fmt(v):
        s = f"{v:.1f}"
        return s[:-2] if s.endswith(".0") else s

    parts = []
    for geom in topo["objects"]["land"]["geometries"]:
        polys = geom["arcs"] if geom["type"] == "MultiPolygon" else [geom["arcs"]]
        for poly in polys:
            for r in poly:
                out, last = [], None
                for lon, lat in ring(r):
                    p = (fmt(lon + 180), fmt(90 - lat))
                    if p != last:
                        out.append(p)
                        last = p
                if len(out) >= 3:
                    parts.append("M" + "L".join(f"{x} {y}" for x, y in out) + "Z")
    print('<?xml version="1.0" encoding="UTF-8"?>')
    print("<!-- Land outline from Natural Earth 1:110m (public domain), "
          "equirectangular, 1 unit = 1 degree; made by make-world-svg.py -->")
    print('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 360 180">')
    print(f'<path id="land" d="{"".join(parts)}"/>')
    print("</svg>")


main(sys.argv[1])
