"""Downstream editing (paper §5.3): triplet export for editors, the Step1X-Edit cluster path, a CPU editor."""
from editcaption.downstream.export import (
    export_instructpix2pix,
    export_step1x,
    read_instructpix2pix,
    read_report,
    read_step1x,
)

__all__ = ["export_instructpix2pix", "export_step1x", "read_instructpix2pix", "read_report", "read_step1x"]
