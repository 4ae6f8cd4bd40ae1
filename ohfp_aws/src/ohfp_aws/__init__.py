"""ohfp-aws: the AWS provider for ohfp (EC2 Fleet, Auto Scaling groups, Spot Fleet, RunInstances).

Host Factory reaches it through the ``ohfp.providers`` entry point ``aws``
(:func:`ohfp_aws.provider.make_provider`). Importing the package imports no botocore
(ohfp-aws uses botocore alone; boto3 is not needed).
"""
