"""Loopback fakes of upstream platforms, speaking their real protocols."""
