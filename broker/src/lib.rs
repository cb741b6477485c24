//! `sluice-broker`: the network server that speaks the Kafka protocol over `sluice-storage`.
