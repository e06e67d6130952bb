"""Naive loops for the simplified (centroid) silhouette (README, "The loss").

For anchor i: a_i = d(x_i, mean of its class's references), b_i = soft-min over the other classes of
d(x_i, that class's mean). Valid when the own class has another member and another class is present.
Shares no code with the implementation; reuses the loop oracle's distance and soft minimum.
"""

from __future__ import annotations

from tests.oracles.silhouette_oracle import distance, soft_min, to_labels, to_rows


def centroid_terms(x, y, ref_x=None, ref_y=None, *, metric, kind, temperature, temperature_scale="relative"):
    """Lists ``s, a, b, valid``; without references the anchors are their own references.

    ``temperature_scale="relative"``: the soft minimum's temperature is ``temperature`` times the mean of
    the anchor's distances to the other centroids; ``"absolute"``: ``temperature``."""
    anchors, labels = to_rows(x), to_labels(y)
    same = ref_x is None
    refs, ref_labels = (anchors, labels) if same else (to_rows(ref_x), to_labels(ref_y))
    centroids = {}
    for c in sorted(set(ref_labels)):
        members = [r for r, label in zip(refs, ref_labels, strict=True) if label == c]
        centroids[c] = [sum(col) / len(members) for col in zip(*members, strict=True)]
    s, a, b, valid = [], [], [], []
    for point, label in zip(anchors, labels, strict=True):
        others_in_class = ref_labels.count(label) - (1 if same else 0)
        other_classes = [c for c in centroids if c != label]
        if others_in_class < 1 or not other_classes:
            s.append(0.0), a.append(0.0), b.append(0.0), valid.append(False)
            continue
        a_i = distance(point, centroids[label], metric)
        other = [distance(point, centroids[c], metric) for c in other_classes]
        t = temperature * (sum(other) / len(other)) if temperature_scale == "relative" else temperature
        b_i = soft_min(other, kind, t)
        denom = max(a_i, b_i)
        s.append((b_i - a_i) / denom if denom > 0 else 0.0)
        a.append(a_i), b.append(b_i), valid.append(True)
    return s, a, b, valid
