"""Releases for the units: the wheelhouse (``wheelhouse``) and the signed bundle
(``bundle``) that ``smartcity-controller release build`` writes; docs/updates.md."""
