"""Outputs people look at: heatmap overlays (figures and reports build on these)."""

from micam.reports.overlay import overlay_heatmap, restore_image, save_overlay

__all__ = ["overlay_heatmap", "restore_image", "save_overlay"]
