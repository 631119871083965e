"""A Kubernetes API stand-in (kmock's emulator with its gaps closed) and a scripted
kubelet/Job controller, so the `kubernetes` backend is tested with the real client
over HTTP on 127.0.0.1. See tests/kube/fixtures.py for the `kube` fixture."""
