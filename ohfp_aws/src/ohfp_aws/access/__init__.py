"""AWS access: the botocore session and clients (:mod:`.session`), one small typed wrapper per
service (:mod:`.ec2`, :mod:`.autoscaling`, :mod:`.ssm`, :mod:`.sts`, :mod:`.sqs`,
:mod:`.eventbridge`, :mod:`.service_quotas`, made on first use by :mod:`.services`), the one
error boundary every call crosses (:mod:`.boundary`), and EC2 instances read and ended in
batches (:mod:`.instances`). Only this package touches a botocore client. Importing it imports
no botocore.
"""
