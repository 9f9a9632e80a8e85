"""What moto's CloudFormation leaves undone, done through the APIs so the local stack looks like AWS.

moto skips `AWS::KinesisVideo::Stream` (the stream lives on the local Kinesis Video endpoint, tagged
with the environment as CloudFormation tags it with the stacks' tags), and
on delete it neither detaches the internet gateway nor deletes route tables or flow logs, so the
VPC (and the network stack) could never be deleted, nor empties the ECR repository (EmptyOnDelete). It also drops the VPC's EnableDnsHostnames
(moto's ECS RunTask in awsvpc mode fails without it) and registers the task definition with only
its family, containers and memory (no cpu, awsvpc network mode, FARGATE compatibility or roles), so
a complete revision is registered from the deployed template. It creates the Fargate fleet's ECS
service without network or deployment configuration (launch type EC2), and skips Application Auto
Scaling's scalable targets and policies; the service is created again as the template says, and
the scaling of both fleet services (the GPU one with `deploy --gpu`) is registered through the API.
It skips SNS subscriptions and topic and queue policies: the events queue is subscribed to the events
topic through the API (moto enforces no policies, so none is needed for the delivery).
"""

from __future__ import annotations

from infra import naming
from kinase_cli.aws.target import Target
from kinase_cli.ui import console
from worker import callrecord


@callrecord.standing_in()
def after_deploy(target: Target, values: dict[str, str]) -> None:
    kvs = target.client("kinesisvideo")
    name = values.get("StreamName") or naming.stream_name(target.env)
    try:
        kvs.create_stream(
            StreamName=name,
            DataRetentionInHours=int(values.get("StreamRetentionHours", "24")),
            MediaType="video/h264",
            Tags={naming.ENV_TAG: target.env},  # on AWS the stream has the stacks' tags
        )
        console.info(f"created Kinesis Video stream {name} on the local endpoint")
    except kvs.exceptions.ResourceInUseException:
        pass
    if values.get("VpcId"):
        target.client("ec2").modify_vpc_attribute(VpcId=values["VpcId"], EnableDnsHostnames={"Value": True})
    if values.get("EventsTopicArn"):
        _subscribe_events_queue(target, values["EventsTopicArn"], values["EventsQueueUrl"])
    if values.get("TaskDefinitionFamily"):
        _complete_task_definition(target, values)


def _subscribe_events_queue(target: Target, topic_arn: str, queue_url: str) -> None:
    """The events queue's subscription to the topic, with raw delivery (AWS::SNS::Subscription); subscribing again is a no-op."""
    arn = target.client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    target.client("sns").subscribe(
        TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}, ReturnSubscriptionArn=True
    )


def _complete_task_definition(target: Target, values: dict[str, str]) -> None:
    import json

    ecs = target.client("ecs")
    template = target.client("cloudformation").get_template(StackName=target.stack_name("compute"))["TemplateBody"]
    template = json.loads(template) if isinstance(template, str) else template
    for props in (r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::ECS::TaskDefinition"):
        if props.get("NetworkMode") != "awsvpc":
            continue  # the GPU workers' bridge-mode EC2 definition: moto keeps what it needs
        current = ecs.describe_task_definition(taskDefinition=props["Family"])["taskDefinition"]
        if current.get("networkMode") == "awsvpc":
            continue
        ecs.register_task_definition(
            family=current["family"],
            containerDefinitions=current["containerDefinitions"],
            volumes=current.get("volumes", []),
            cpu=props["Cpu"],
            memory=props["Memory"],
            networkMode=props["NetworkMode"],
            requiresCompatibilities=props["RequiresCompatibilities"],
            taskRoleArn=values["TaskRoleArn"],
            executionRoleArn=values["ExecutionRoleArn"],
        )
    services = {r["Properties"].get("LaunchType", "GPU"): k for k, r in template["Resources"].items() if r["Type"] == "AWS::ECS::Service"}
    if values.get("FleetServiceName") and _complete_fleet_service(target, values, template["Resources"][services["FARGATE"]]["Properties"]):
        _register_scaling(target, values["ClusterName"], values["FleetServiceName"], services["FARGATE"], template["Resources"])
    if values.get("GpuFleetServiceName") and not _scaling_registered(target, values["ClusterName"], values["GpuFleetServiceName"]):
        _register_scaling(target, values["ClusterName"], values["GpuFleetServiceName"], services["GPU"], template["Resources"])


def _complete_fleet_service(target: Target, values: dict[str, str], props: dict) -> bool:
    """moto creates the service without its network and deployment configuration; True if it had to be created again."""
    ecs = target.client("ecs")
    cluster, name = values["ClusterName"], values["FleetServiceName"]
    (service,) = ecs.describe_services(cluster=cluster, services=[name])["services"]
    if service.get("status") == "ACTIVE" and service.get("networkConfiguration"):
        return False
    deployment = props["DeploymentConfiguration"]
    ecs.delete_service(cluster=cluster, service=name, force=True)
    ecs.create_service(
        cluster=cluster,
        serviceName=name,
        taskDefinition=service["taskDefinition"].rsplit("/", 1)[-1].split(":")[0],
        desiredCount=0,
        launchType=props["LaunchType"],
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": values["SubnetIds"].split(","),
                "securityGroups": [values["SecurityGroupId"]],
                "assignPublicIp": props["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"],
            }
        },
        deploymentConfiguration={
            "deploymentCircuitBreaker": {
                "enable": deployment["DeploymentCircuitBreaker"]["Enable"],
                "rollback": deployment["DeploymentCircuitBreaker"]["Rollback"],
            },
            "maximumPercent": deployment["MaximumPercent"],
            "minimumHealthyPercent": deployment["MinimumHealthyPercent"],
        },
    )
    return True


def _scaling_registered(target: Target, cluster: str, name: str) -> bool:
    return bool(
        target.client("application-autoscaling").describe_scalable_targets(
            ServiceNamespace="ecs", ResourceIds=[f"service/{cluster}/{name}"], ScalableDimension="ecs:service:DesiredCount"
        )["ScalableTargets"]
    )


def _register_scaling(target: Target, cluster: str, name: str, service_id: str, resources: dict) -> None:
    """The scalable target and policies the template gives the service `service_id` (its logical id)."""
    import json

    scaling = target.client("application-autoscaling")
    resource_id = f"service/{cluster}/{name}"
    (target_id,) = [
        k
        for k, r in resources.items()
        if r["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget"
        and f'["{service_id}", "Name"]' in json.dumps(r["Properties"]["ResourceId"])
    ]
    limits = resources[target_id]["Properties"]
    scaling.register_scalable_target(
        ServiceNamespace="ecs",
        ResourceId=resource_id,
        ScalableDimension="ecs:service:DesiredCount",
        MinCapacity=limits["MinCapacity"],
        MaxCapacity=limits["MaxCapacity"],
    )
    for policy in (r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApplicationAutoScaling::ScalingPolicy"):
        if policy.get("ScalingTargetId") != {"Ref": target_id}:
            continue
        scaling.put_scaling_policy(
            PolicyName=policy["PolicyName"],
            ServiceNamespace="ecs",
            ResourceId=resource_id,
            ScalableDimension="ecs:service:DesiredCount",
            PolicyType=policy["PolicyType"],
            TargetTrackingScalingPolicyConfiguration=policy["TargetTrackingScalingPolicyConfiguration"],
        )


@callrecord.standing_in()
def before_destroy(target: Target, values: dict[str, str]) -> None:
    kvs = target.client("kinesisvideo")
    try:
        arn = kvs.describe_stream(StreamName=values.get("StreamName") or naming.stream_name(target.env))["StreamInfo"]["StreamARN"]
        kvs.delete_stream(StreamARN=arn)
    except kvs.exceptions.ResourceNotFoundException:
        pass
    if values.get("RepositoryName"):
        _empty_repository(target, values["RepositoryName"])
    if values.get("VpcId"):
        _release_vpc(target, values["VpcId"])


def _empty_repository(target: Target, name: str) -> None:
    """The repository's EmptyOnDelete, which moto's CloudFormation ignores: it refuses to delete a repository
    that holds images (`push-image --local` puts some), and the registry stack's deletion fails."""
    ecr = target.client("ecr")
    try:
        ids = [i for page in ecr.get_paginator("list_images").paginate(repositoryName=name) for i in page["imageIds"]]
    except ecr.exceptions.RepositoryNotFoundException:
        return
    for start in range(0, len(ids), 100):
        ecr.batch_delete_image(repositoryName=name, imageIds=ids[start : start + 100])


def _release_vpc(target: Target, vpc: str) -> None:
    ec2 = target.client("ec2")
    flow_logs = ec2.describe_flow_logs(Filters=[{"Name": "resource-id", "Values": [vpc]}])["FlowLogs"]
    if flow_logs:
        ec2.delete_flow_logs(FlowLogIds=[f["FlowLogId"] for f in flow_logs])
    for igw in ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [vpc]}])["InternetGateways"]:
        ec2.detach_internet_gateway(InternetGatewayId=igw["InternetGatewayId"], VpcId=vpc)
    for table in ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"]:
        if any(a.get("Main") for a in table["Associations"]):
            continue
        for association in table["Associations"]:
            ec2.disassociate_route_table(AssociationId=association["RouteTableAssociationId"])
        ec2.delete_route_table(RouteTableId=table["RouteTableId"])
