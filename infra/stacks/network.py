"""The network the worker tasks run in: public subnets only, so no NAT gateway to pay for.

Tasks get a public IP and reach AWS APIs directly; the security group admits nothing inbound.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import naming
from infra.stacks.outputs import output


class NetworkStack(cdk.Stack):
    def __init__(self, scope: Construct, id: str, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr("10.42.0.0/16"),
            max_azs=naming.MAX_AZS,
            nat_gateways=0,
            subnet_configuration=[ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24)],
            enable_dns_hostnames=True,
            enable_dns_support=True,
            restrict_default_security_group=False,
        )
        flow_logs = logs.LogGroup(self, "FlowLogs", retention=logs.RetentionDays.TWO_WEEKS, removal_policy=cdk.RemovalPolicy.DESTROY)
        self.vpc.add_flow_log("FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs))
        self.security_group = ec2.SecurityGroup(
            self,
            "WorkerSecurityGroup",
            vpc=self.vpc,
            description="kinase worker tasks: outbound to AWS APIs only, no inbound",
            allow_all_outbound=True,
        )

        output(self, "VpcId", self.vpc.vpc_id)
        output(self, "SubnetIds", ",".join(s.subnet_id for s in self.vpc.public_subnets), export=True)
        output(self, "SecurityGroupId", self.security_group.security_group_id, export=True)
