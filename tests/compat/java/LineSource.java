// A Kafka Connect source connector that sends the lines of a file to a topic, one record
// per line, its source offset the line number (written here for
// tests/compat/test_kafka_connect.py, like Kafka's FileStreamSource, which is not on
// Maven Central). A worker that restarts resumes after the last line whose offset it
// stored in its offset topic, so a line sent twice means offsets were lost.
//
// Configs: `file` (the path), `topic`.

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.Task;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.source.SourceConnector;
import org.apache.kafka.connect.source.SourceRecord;
import org.apache.kafka.connect.source.SourceTask;

public final class LineSource extends SourceConnector {
    private Map<String, String> props;

    @Override public String version() { return "1"; }
    @Override public void start(Map<String, String> props) { this.props = props; }
    @Override public Class<? extends Task> taskClass() { return LineTask.class; }
    @Override public List<Map<String, String>> taskConfigs(int maxTasks) { return List.of(props); }
    @Override public void stop() { }

    @Override public ConfigDef config() {
        return new ConfigDef()
            .define("file", ConfigDef.Type.STRING, ConfigDef.Importance.HIGH, "the file to send")
            .define("topic", ConfigDef.Type.STRING, ConfigDef.Importance.HIGH, "the topic to send it to");
    }

    /** Sends the lines after the stored offset, polling the file for more. */
    public static final class LineTask extends SourceTask {
        private Path file;
        private String topic;
        private Map<String, String> partition;
        private long next;

        @Override public String version() { return "1"; }

        @Override public void start(Map<String, String> props) {
            file = Path.of(props.get("file"));
            topic = props.get("topic");
            partition = Map.of("file", file.toString());
            Map<String, Object> stored = context.offsetStorageReader().offset(partition);
            next = stored == null ? 0 : ((Number) stored.get("line")).longValue();
        }

        @Override public List<SourceRecord> poll() throws InterruptedException {
            List<String> lines;
            try {
                lines = Files.readAllLines(file, StandardCharsets.UTF_8);
            } catch (IOException e) {
                throw new org.apache.kafka.connect.errors.ConnectException(e);
            }
            List<SourceRecord> records = new ArrayList<>();
            while (next < lines.size()) {
                String line = lines.get((int) next);
                next++;
                records.add(new SourceRecord(partition, Map.of("line", next), topic, null,
                    null, null, Schema.STRING_SCHEMA, line));
            }
            if (records.isEmpty()) {
                Thread.sleep(100);
                return null;
            }
            return records;
        }

        @Override public void stop() { }
    }
}
