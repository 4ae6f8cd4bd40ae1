"""Real guests for the libvirt provider: a private libvirt host in namespaces of its own
(:mod:`.lab_host` starts and drives :mod:`.lab`) and the guests' boot files (:mod:`.guest`)."""
