"""Where the stack's network comes from: a new private-only VPC, or subnets of an existing VPC.

Like terraform-aws-modules, the stack either creates the VPC or takes the ids of one the user already runs; pure
data (no cdktf), so the settings can derive from it.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Self

from pydantic import model_validator

from modules.props import Props, is_unresolved, matching, satisfying

MIN_PREFIX, MAX_PREFIX = 16, 28
"""VPC and subnet sizes AWS allows (/16 to /28)."""


def _block(cidr: str) -> ipaddress.IPv4Network | None:
    try:
        return ipaddress.IPv4Network(cidr)
    except ValueError:
        return None


def _vpc_block(cidr: str) -> bool:
    block = _block(cidr)
    return block is not None and block.is_private and MIN_PREFIX <= block.prefixlen <= MAX_PREFIX


def _subnet_block(cidr: str) -> bool:
    block = _block(cidr)
    return block is not None and MIN_PREFIX <= block.prefixlen <= MAX_PREFIX


VpcCidr = Annotated[
    str,
    satisfying("a private (RFC 1918) IPv4 block from /16 to /28 with no host bits set, e.g. 10.0.0.0/16", _vpc_block),
]
SubnetCidr = Annotated[
    str, satisfying("IPv4 blocks from /16 to /28 with no host bits set, e.g. 10.0.1.0/24", _subnet_block)
]
AvailabilityZone = Annotated[
    str, matching(r"[a-z]{2}(-gov)?-[a-z]+-\d[a-z]", "availability zone names such as ap-northeast-1a")
]
VpcId = Annotated[str, matching(r"vpc-[0-9a-f]{8,17}", "a VPC id such as vpc-0123456789abcdef0")]
SubnetId = Annotated[str, matching(r"subnet-[0-9a-f]{8,17}", "subnet ids such as subnet-0123456789abcdef0")]


class NewVpc(Props):
    """A new VPC with private subnets only: no internet or NAT gateway, flow logs on, default security group emptied.
    The functions sign IAM tokens locally and reach AWS APIs only through interface endpoints, so nothing needs a
    route out."""

    vpc_cidr: VpcCidr = "10.0.0.0/16"
    """The VPC's address block. Default: 10.0.0.0/16."""
    availability_zones: tuple[AvailabilityZone, ...] = ("ap-northeast-1a", "ap-northeast-1c")
    """At least two distinct zones of the region; the i-th subnet of each list goes into the i-th zone.
    Default: ap-northeast-1a, ap-northeast-1c."""
    lambda_subnet_cidrs: tuple[SubnetCidr, ...] = ("10.0.1.0/24", "10.0.2.0/24")
    """Private subnets for the functions' network interfaces and the Secrets Manager endpoint, one per zone in order
    (1 to the number of zones), inside the VPC, not overlapping. Default: 10.0.1.0/24, 10.0.2.0/24."""
    db_subnet_cidrs: tuple[SubnetCidr, ...] = ("10.0.11.0/24", "10.0.12.0/24")
    """Private subnets for RDS and RDS Proxy, one per zone in order (2 to the number of zones: both need two zones),
    inside the VPC, not overlapping. Default: 10.0.11.0/24, 10.0.12.0/24."""

    @model_validator(mode="after")
    def _fits(self) -> Self:
        zones = self.availability_zones
        if len(zones) < 2 or len(set(zones)) != len(zones):
            self.refuse("availability_zones", "at least two distinct availability zones")
        vpc = ipaddress.IPv4Network(self.vpc_cidr)
        seen: list[tuple[str, ipaddress.IPv4Network]] = []
        for name, minimum in (("lambda_subnet_cidrs", 1), ("db_subnet_cidrs", 2)):
            cidrs = getattr(self, name)
            if not minimum <= len(cidrs) <= len(zones):
                self.refuse(name, f"{minimum} to {len(zones)} CIDR blocks (one per availability zone)")
            for cidr in cidrs:
                block = ipaddress.IPv4Network(cidr)
                if not block.subnet_of(vpc):
                    self.refuse(name, f"blocks inside {{vpc_cidr}} {self.vpc_cidr}", cidr)
                for other_name, other in seen:
                    if block.overlaps(other):
                        self.refuse(name, f"blocks not overlapping {other} ({{{other_name}}})", cidr)
                seen.append((name, block))
        return self


class ExistingVpc(Props):
    """Subnets of a VPC the stack does not own: it adds only its security groups (and the Secrets Manager endpoint)
    and never touches the VPC's routes, flow logs or default security group. The VPC needs DNS support and DNS host
    names (the endpoint uses private DNS); the subnets need no route to the internet."""

    vpc_id: VpcId
    """The VPC the security groups and the endpoint go into. Required."""
    lambda_subnet_ids: tuple[SubnetId, ...]
    """Subnets for the functions' network interfaces and the Secrets Manager endpoint (at least one). Required."""
    db_subnet_ids: tuple[SubnetId, ...]
    """Subnets for RDS and RDS Proxy: at least two, in distinct availability zones. Required."""

    @model_validator(mode="after")
    def _enough(self) -> Self:
        if not is_unresolved(self.lambda_subnet_ids) and not self.lambda_subnet_ids:
            self.refuse("lambda_subnet_ids", "at least one subnet id")
        db = self.db_subnet_ids
        if not is_unresolved(db) and (len(db) < 2 or len(set(db)) != len(db)):
            self.refuse("db_subnet_ids", "at least two distinct subnet ids (in two availability zones)")
        return self
