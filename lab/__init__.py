"""The lab: N real Debian hosts on this one machine (systemd-nspawn, systemd as PID 1, each in its own network
namespace on a bridge), reached over SSH exactly like VMs. `python -m lab up|down|status`; see docs/lab.md."""
