"""AWS access: the botocore session and clients (:mod:`.session`), the one error boundary
every call crosses (:mod:`.boundary`), and EC2 instances read and ended in batches
(:mod:`.instances`). Importing it imports no botocore.
"""
