"""Tests of the demo: dataset, configs, tools/demo.py, tools/visualize_context.py."""
