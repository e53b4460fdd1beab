"""What the control plane and the data plane of the local target share (addresses, records); imports neither."""
