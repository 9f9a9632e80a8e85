"""GPU workers (`kinase deploy --gpu`): Fargate has no GPUs, so these run on ECS on EC2.

An Auto Scaling group of GPU instances (the ECS GPU-optimized Amazon Linux 2023 AMI, with the NVIDIA
driver and container toolkit; Amazon Linux 2 is past its end of standard support) is the cluster's
capacity provider. The group starts and idles at
zero instances: ECS managed scaling adds an instance when a task asks for a GPU
(`kinase run-task --gpu`, `kinase fleet up --gpu`) and removes it when none is left, so an idle
environment pays for no GPU.

Two task definitions ask for one GPU each (resourceRequirements GPU 1) and run the image `push-image
--variant gpu` builds (worker/Dockerfile with VARIANT=pt: the CUDA path), with KINASE_DEVICE=cuda:
the one-off worker, and the fleet worker with its own ECS service on the GPU capacity provider,
scaled like the Fargate fleet (infra/stacks/fleet.py) but created with no room to scale (0..0)
until `kinase fleet up --gpu` gives it some, since both services track the same metric.
Its network mode is bridge: the instances sit in the public subnets with public addresses (no NAT
gateway), and an awsvpc task on EC2 gets no public address of its own, so it could not reach the
AWS APIs. The instances admit nothing inbound (the network stack's worker security group) and require IMDSv2
(hop limit 1, so a bridge-mode container cannot read the instance's metadata, its region included: the
containers get AWS_REGION from their environment, infra/stacks/compute.py).

`kinase deploy --gpu` checks the instance type, its zones and the account's GPU quota before any
of this is created (kinase_cli/aws/gpu_capacity.py).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import naming
from infra.stacks.fleet import scale_on_streams_per_worker, service_rules
from infra.stacks.nag import acknowledge
from infra.stacks.outputs import imported
from worker.settings import environment as worker_environment

ROOT_VOLUME_GIB = 60  # the GPU AMI's root volume is 30 GiB; the CUDA image needs room to unpack


class GpuWorkers(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        env_name: str,
        instance_type: str,
        vpc: ec2.IVpc,
        cluster: ecs.Cluster,
        image: ecs.ContainerImage,
        task_role: iam.IRole,
        execution_role: iam.IRole,
        log_group: logs.ILogGroup,
        environment: dict[str, str],
        fleet_environment: dict[str, str],
    ) -> None:
        super().__init__(scope, id)
        self.image, self.log_group = image, log_group
        # The network stack's worker security group and public subnets, by their exports (no automatic
        # cross-stack references: the network stack's outputs stay the documented keys).
        security_group = ec2.SecurityGroup.from_security_group_id(self, "WorkerSecurityGroup", imported(env_name, "SecurityGroupId"))
        subnet_ids = cdk.Fn.split(",", imported(env_name, "SubnetIds"), naming.MAX_AZS)
        subnets = [ec2.Subnet.from_subnet_id(self, f"PublicSubnet{i}", cdk.Fn.select(i, subnet_ids)) for i in range(naming.MAX_AZS)]
        template = ec2.LaunchTemplate(
            self,
            "LaunchTemplate",
            instance_type=ec2.InstanceType(instance_type),
            machine_image=ecs.EcsOptimizedImage.amazon_linux2023(ecs.AmiHardwareType.GPU),
            require_imdsv2=True,
            associate_public_ip_address=True,
            security_group=security_group,
            role=iam.Role(self, "InstanceRole", assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"), description="kinase GPU instances"),
            user_data=ec2.UserData.for_linux(),
            block_devices=[
                ec2.BlockDevice(device_name="/dev/xvda", volume=ec2.BlockDeviceVolume.ebs(ROOT_VOLUME_GIB, encrypted=True)),
            ],
        )
        self.group = autoscaling.AutoScalingGroup(
            self,
            "Instances",
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnets=subnets),
            launch_template=template,
            min_capacity=0,
            max_capacity=naming.GPU_MAX_INSTANCES,
        )
        self.capacity_provider = ecs.AsgCapacityProvider(
            self,
            "CapacityProvider",
            capacity_provider_name=naming.gpu_capacity_provider(env_name),
            auto_scaling_group=self.group,
            enable_managed_scaling=True,
            target_capacity_percent=100,
            enable_managed_termination_protection=False,
            enable_managed_draining=True,  # ECS drains instances itself: no CDK drain-hook Lambda and SNS topic
        )
        cluster.add_asg_capacity_provider(self.capacity_provider)

        self.task = self._task("Task", naming.gpu_family(env_name), task_role, execution_role)
        self._container(self.task, "Worker", "worker", environment, stream_prefix="gpu")
        self.fleet_task = self._task("FleetTask", naming.gpu_fleet_family(env_name), task_role, execution_role)
        self._container(
            self.fleet_task,
            "Fleet",
            naming.FLEET_CONTAINER_NAME,
            fleet_environment,
            stream_prefix="fleet-gpu",
            entry_point=naming.FLEET_ENTRY_POINT,
        )
        self.fleet_service = ecs.Ec2Service(
            self,
            "FleetService",
            cluster=cluster,
            task_definition=self.fleet_task,
            capacity_provider_strategies=[
                ecs.CapacityProviderStrategy(capacity_provider=self.capacity_provider.capacity_provider_name, weight=1)
            ],
            **service_rules(),
        )
        scale_on_streams_per_worker(self.fleet_service, env_name, 0)  # `fleet up --gpu --workers N` sets N..GPU_MAX_WORKERS

        for task in (self.task, self.fleet_task):
            acknowledge(task, "AwsSolutions-ECS2", "the variables hold resource names and settings, no secrets")
        acknowledge(
            self.group,
            "AwsSolutions-AS3",
            "the group scales between zero and a few instances on ECS managed scaling; its activity is in the ECS and Auto Scaling events",
        )
        for rule, reason in (
            (
                "AwsSolutions-IAM5[Resource::*]",
                "the ECS container-instance permissions CDK grants (ecs:DiscoverPollEndpoint, ecs:Poll, ecr:GetAuthorizationToken, logs) "
                "support no resource-level permissions",
            ),
            (
                "AwsSolutions-IAM5[Action::ecs:Submit*]",
                "CDK's container-instance grant: the agent's Submit*StateChange calls, on this cluster's ARN only",
            ),
        ):
            acknowledge(template.role, rule, reason)

    def _task(self, id: str, family: str, task_role: iam.IRole, execution_role: iam.IRole) -> ecs.Ec2TaskDefinition:
        return ecs.Ec2TaskDefinition(
            self, id, family=family, network_mode=ecs.NetworkMode.BRIDGE, task_role=task_role, execution_role=execution_role
        )

    def _container(
        self, task: ecs.Ec2TaskDefinition, id: str, name: str, environment: dict[str, str], *, stream_prefix: str, entry_point=None
    ) -> None:
        task.add_container(
            id,
            container_name=name,
            image=self.image,
            entry_point=list(entry_point) if entry_point else None,
            cpu=naming.GPU_TASK_CPU,
            memory_limit_mib=naming.GPU_TASK_MEMORY_MIB,
            gpu_count=1,
            logging=ecs.LogDrivers.aws_logs(stream_prefix=stream_prefix, log_group=self.log_group),
            environment={**environment, **worker_environment(device="cuda")},
            stop_timeout=cdk.Duration.seconds(30),
        )
