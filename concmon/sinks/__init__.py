"""Built-in sinks. Each is an ordinary plugin, switched on by name through ``CONCMON_SINKS``."""
