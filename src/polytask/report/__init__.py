"""Reports: the HTML report and terminal tables."""

from polytask.report.html import render_report
from polytask.report.terminal import print_summary, verdict_table

__all__ = ["print_summary", "render_report", "verdict_table"]
