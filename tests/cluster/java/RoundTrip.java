/*
 * The Java client's round trip of tests/cluster/test_sluice_cluster.py: Apache Kafka's own Java
 * producer and consumer against a cluster, so that the test can check what they did.
 *
 * Produces --per-partition records to every partition 0..--partitions-1 of --topic (explicit
 * partitions; idempotent, acks=all; values "<tag>-<partition>-<seq>"), then consumes the topic in
 * consumer group --group from the earliest offset until it has read every record it produced
 * (or --timeout seconds passed), commits, and prints one line per event to stdout:
 *
 *   produced PARTITION OFFSET VALUE      (in send order, once every send is acknowledged)
 *   consumed PARTITION OFFSET VALUE      (in poll order; only records whose value has the tag)
 *   done produced=N consumed=M
 *
 * The test, not this program, decides what is right (each value consumed once, in order). It
 * exits 0 when it ran to the end, 1 when a send failed, 2 on bad arguments.
 *
 * Usage (javaclient.py compiles this file and builds the command line):
 *   java -cp DIR:KAFKA_LIBS/* RoundTrip --bootstrap B --topic T --tag TAG --partitions P
 *        --per-partition K --group G [--timeout S]
 */

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.HashMap;
import java.util.Properties;
import java.util.concurrent.Future;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class RoundTrip {
    public static void main(String[] argv) throws Exception {
        Map<String, String> args = new HashMap<>();
        for (int i = 0; i + 1 < argv.length; i += 2) {
            if (!argv[i].startsWith("--")) {
                System.err.println("RoundTrip: unexpected argument " + argv[i]);
                System.exit(2);
            }
            args.put(argv[i].substring(2), argv[i + 1]);
        }
        for (String needed : new String[] {"bootstrap", "topic", "tag", "partitions", "per-partition", "group"}) {
            if (!args.containsKey(needed)) {
                System.err.println("RoundTrip: --" + needed + " is required");
                System.exit(2);
            }
        }
        String bootstrap = args.get("bootstrap");
        String topic = args.get("topic");
        String tag = args.get("tag");
        int partitions = Integer.parseInt(args.get("partitions"));
        int perPartition = Integer.parseInt(args.get("per-partition"));
        long timeoutMs = (long) (Double.parseDouble(args.getOrDefault("timeout", "60")) * 1000);

        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, String.valueOf(Math.max(timeoutMs, 30000)));
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        List<String> values = new ArrayList<>();
        List<Future<RecordMetadata>> acks = new ArrayList<>();
        try (KafkaProducer<String, String> producer =
                 new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            // Round-robin over the partitions, so every partition's records interleave with the
            // others' while each partition's own stay in send order.
            for (int seq = 0; seq < perPartition; seq++) {
                for (int partition = 0; partition < partitions; partition++) {
                    String value = tag + "-" + partition + "-" + seq;
                    values.add(value);
                    acks.add(producer.send(new ProducerRecord<>(topic, partition, "k" + seq, value)));
                }
            }
            producer.flush();
            for (int i = 0; i < acks.size(); i++) {
                RecordMetadata m;
                try {
                    m = acks.get(i).get();
                } catch (Exception e) {
                    System.err.println("RoundTrip: send of " + values.get(i) + " failed: " + e);
                    System.exit(1);
                    return;
                }
                System.out.println("produced " + m.partition() + " " + m.offset() + " " + values.get(i));
            }
        }

        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.GROUP_ID_CONFIG, args.get("group"));
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        int expected = values.size();
        int consumed = 0;
        long deadline = System.currentTimeMillis() + timeoutMs;
        try (KafkaConsumer<String, String> consumer =
                 new KafkaConsumer<>(c, new StringDeserializer(), new StringDeserializer())) {
            consumer.subscribe(List.of(topic));
            while (consumed < expected && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    if (r.value() != null && r.value().startsWith(tag + "-")) {
                        consumed++;
                        System.out.println("consumed " + r.partition() + " " + r.offset() + " " + r.value());
                    }
                }
            }
            consumer.commitSync(Duration.ofSeconds(10));
        }
        System.out.println("done produced=" + expected + " consumed=" + consumed);
        System.out.flush();
    }
}
