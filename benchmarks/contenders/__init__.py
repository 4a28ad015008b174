"""Contenders: clients other than ours (the official BullMQ on Node, amqplib), driven through the
role protocol (:mod:`.protocol`)."""
