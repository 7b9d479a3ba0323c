"""A small software renderer for previews: z-buffered flat-shaded triangles and depth-coloured points.

Pure numpy, no GL: the view is orthographic, the scene turned about its centre (``azimuth`` about the
vertical axis, ``elevation`` about the horizontal one) from the camera frame (x right, y down,
z forward), then fitted into the picture with a margin. Triangles are rasterised in batches grouped
by the size of their bounding boxes, so the work is proportional to the pixels they cover; the nearest
triangle wins each pixel. Both faces of a triangle are lit (winding is not trusted), by one light
from above-left of the viewer plus ambient light.
"""

from __future__ import annotations

DEFAULT_SIZE = 640
DEFAULT_AZIMUTH = 25.0
DEFAULT_ELEVATION = 15.0
BACKGROUND = (245, 245, 245)
MESH_GREY = (190, 190, 200)
AMBIENT = 0.3
LIGHT = (-0.4, -0.6, -1.0)          # towards the light, in view coordinates (up-left, towards the viewer)
MAX_CANDIDATES = 2_000_000          # pixel candidates rasterised at once
MARGIN = 0.05


def view(points, azimuth: float = DEFAULT_AZIMUTH, elevation: float = DEFAULT_ELEVATION):
    """Points turned about their bounding-box centre: (N, 3) in view coordinates (z away from the viewer)."""
    import numpy as np

    p = np.asarray(points, dtype=np.float64)
    if not len(p):
        return p.reshape(0, 3)
    centre = (p.min(axis=0) + p.max(axis=0)) / 2
    a, e = np.radians(azimuth), np.radians(elevation)
    turn = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])   # about y
    tilt = np.array([[1, 0, 0], [0, np.cos(e), np.sin(e)], [0, -np.sin(e), np.cos(e)]])   # about x: look down
    return (p - centre) @ (tilt @ turn).T


def fit(xy, size: int):
    """Scale view x/y into a picture of long side ``size``: (pixel coords (N, 2), width, height)."""
    import numpy as np

    if not len(xy):
        return xy, size, size
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = np.maximum(hi - lo, 1e-12)
    scale = size * (1 - 2 * MARGIN) / span.max()
    w = max(16, int(np.ceil(span[0] * scale / (1 - 2 * MARGIN))))
    h = max(16, int(np.ceil(span[1] * scale / (1 - 2 * MARGIN))))
    px = (xy - lo) * scale + np.array([(w - span[0] * scale) / 2, (h - span[1] * scale) / 2])
    return px, w, h


def face_shading(v, faces):
    """Lambert shading per face (two-sided) in view coordinates, AMBIENT..1."""
    import numpy as np

    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    n = np.cross(b - a, c - a)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)
    light = np.asarray(LIGHT, dtype=np.float64)
    light /= np.linalg.norm(light)
    return AMBIENT + (1 - AMBIENT) * np.abs(n @ light)


def rasterize(px, depth, faces, width: int, height: int):
    """The nearest face at every pixel: an int array (height, width), -1 where no face covers it.

    ``px`` (N, 2) vertex pixel coordinates, ``depth`` (N,) larger = farther. A pixel belongs to a
    triangle when its centre lies inside it (edge functions, either winding).
    """
    import numpy as np

    zbuf = np.full(width * height, np.inf)
    fbuf = np.full(width * height, -1, dtype=np.int64)
    if not len(faces):
        return fbuf.reshape(height, width)
    tri = px[faces]                                        # (M, 3, 2)
    lo = np.floor(tri.min(axis=1)).astype(np.int64)
    hi = np.ceil(tri.max(axis=1)).astype(np.int64)
    lo = np.clip(lo, 0, [width - 1, height - 1])
    hi = np.clip(hi, 0, [width - 1, height - 1])
    extent = np.maximum(hi - lo + 1, 1).max(axis=1)
    side = 2 ** np.ceil(np.log2(extent)).astype(np.int64)  # bucket by the power of two that holds the box
    z = depth[faces]                                       # (M, 3)
    for s in np.unique(side):
        ids = np.nonzero(side == s)[0]
        per = max(1, MAX_CANDIDATES // int(s * s))
        oy, ox = np.mgrid[0:s, 0:s]
        ox, oy = ox.ravel(), oy.ravel()
        for start in range(0, len(ids), per):
            f = ids[start:start + per]
            x = lo[f, 0:1] + ox[None, :]                   # (F, s*s)
            y = lo[f, 1:2] + oy[None, :]
            keep = (x <= hi[f, 0:1]) & (y <= hi[f, 1:2])
            cx, cy = x + 0.5, y + 0.5
            t = tri[f]
            x0, y0 = t[:, 0, 0:1], t[:, 0, 1:2]
            x1, y1 = t[:, 1, 0:1], t[:, 1, 1:2]
            x2, y2 = t[:, 2, 0:1], t[:, 2, 1:2]
            area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
            w0 = (x1 - cx) * (y2 - cy) - (x2 - cx) * (y1 - cy)
            w1 = (x2 - cx) * (y0 - cy) - (x0 - cx) * (y2 - cy)
            w2 = area - w0 - w1
            sign = np.sign(area)
            inside = keep & (w0 * sign >= 0) & (w1 * sign >= 0) & (w2 * sign >= 0) & (area != 0)
            rows, cols = np.nonzero(inside)
            if not len(rows):
                continue
            safe = np.where(area == 0, 1.0, area)
            zz = (w0 * z[f, 0:1] + w1 * z[f, 1:2] + w2 * z[f, 2:3]) / safe
            pix = y[rows, cols] * width + x[rows, cols]
            zc = zz[rows, cols]
            np.minimum.at(zbuf, pix, zc)
            win = zc <= zbuf[pix]
            fbuf[pix[win]] = f[rows[win]]
    return fbuf.reshape(height, width)


def render_mesh(vertices, faces, colors=None, size: int = DEFAULT_SIZE, azimuth: float = DEFAULT_AZIMUTH,
                elevation: float = DEFAULT_ELEVATION):
    """A PIL picture of the mesh: flat-shaded faces (vertex colours averaged per face, else grey)."""
    import numpy as np
    from PIL import Image as PILImage

    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    v = view(vertices, azimuth, elevation)
    px, w, h = fit(v[:, :2], size)
    face_of = rasterize(px, v[:, 2], faces, w, h)
    out = np.empty((h, w, 3), dtype=np.float64)
    out[:] = BACKGROUND
    hit = face_of >= 0
    if hit.any():
        shade = face_shading(v, faces)
        if colors is not None:
            base = np.asarray(colors, dtype=np.float64)[faces].mean(axis=1)
        else:
            base = np.broadcast_to(np.asarray(MESH_GREY, dtype=np.float64), (len(faces), 3))
        fid = face_of[hit]
        out[hit] = base[fid] * shade[fid, None]
    return PILImage.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def depth_colors(z):
    """Colours for depths: near = warm (red-yellow), far = cool (blue), by rank-free linear scaling."""
    import numpy as np

    stops = np.array([[180, 30, 40], [240, 160, 40], [120, 200, 120], [40, 120, 200], [40, 40, 120]], float)
    z = np.asarray(z, dtype=np.float64)
    lo, hi = (np.percentile(z, 1), np.percentile(z, 99)) if len(z) else (0.0, 1.0)
    t = np.clip((z - lo) / ((hi - lo) or 1.0), 0, 1) * (len(stops) - 1)
    i = np.minimum(t.astype(int), len(stops) - 2)
    frac = (t - i)[:, None]
    return stops[i] * (1 - frac) + stops[i + 1] * frac


def render_points(points, size: int = DEFAULT_SIZE, azimuth: float = DEFAULT_AZIMUTH,
                  elevation: float = DEFAULT_ELEVATION, max_points: int = 200_000):
    """A PIL picture of a point cloud: 2x2 splats coloured by camera depth, the nearest point in front."""
    import numpy as np
    from PIL import Image as PILImage

    p = np.asarray(points, dtype=np.float64)
    if len(p) > max_points:  # an even subsample, the same every time
        p = p[np.linspace(0, len(p) - 1, max_points).astype(np.int64)]
    v = view(p, azimuth, elevation)
    px, w, h = fit(v[:, :2], size)
    out = np.empty((h * w, 3), dtype=np.float64)
    out[:] = BACKGROUND
    if len(p):
        colors = depth_colors(p[:, 2])
        zbuf = np.full(h * w, np.inf)
        base = np.floor(px).astype(np.int64)
        for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
            x = np.clip(base[:, 0] + dx, 0, w - 1)
            y = np.clip(base[:, 1] + dy, 0, h - 1)
            pix = y * w + x
            np.minimum.at(zbuf, pix, v[:, 2])
            win = v[:, 2] <= zbuf[pix]
            out[pix[win]] = colors[win]
    return PILImage.fromarray(out.reshape(h, w, 3).astype(np.uint8))
