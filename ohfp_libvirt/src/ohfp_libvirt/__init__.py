"""ohfp-libvirt: Host Factory machines as KVM/QEMU domains on your own hypervisors.

The provider factory is :func:`ohfp_libvirt.provider.make_provider` (entry point
``libvirt``); the work is in :class:`ohfp_libvirt.cloud.LibvirtCloud`; the only module that
imports libvirt-python is :mod:`ohfp_libvirt.hypervisor`.
"""
